-- Active runs that ended FAILED or KILLED, newest first.
with

active_runs as (
    select *
    from run_overview
    where lifecycle_stage = 'active' and experiment_lifecycle_stage = 'active'
),

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
        estimator_name
    from active_runs
    where status in ('FAILED', 'KILLED')
)

select * from final
order by start_time desc nulls last, run_id
