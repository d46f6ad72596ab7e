-- Active runs per status.
with

active_runs as (
    select status
    from run_overview
    where lifecycle_stage = 'active' and experiment_lifecycle_stage = 'active'
),

final as (
    select
        status,
        count(*) as runs
    from active_runs
    group by status
)

select * from final
order by runs desc, status
