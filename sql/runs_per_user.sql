-- Active runs per MLflow user.
with

final as (
    select
        user_id,
        count(*) as runs,
        count(*) filter (where status = 'FINISHED') as finished,
        count(*) filter (where status = 'FAILED') as failed,
        min(start_time) as first_start,
        max(start_time) as last_start
    from active_runs
    group by user_id
)

select * from final
order by runs desc, user_id
