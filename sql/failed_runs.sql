-- Active runs that ended FAILED or KILLED, newest first.
with

final as (
    select
        run_id,
        experiment_name,
        run_name,
        status,
        user_id,
        start_time,
        end_time,
        duration_seconds,
        estimator_name,
        experiment_id
    from active_runs
    where status in ('FAILED', 'KILLED')
)

select * from final
order by start_time desc nulls last, run_id
