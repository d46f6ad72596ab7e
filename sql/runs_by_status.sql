-- Active runs per status and MLflow workspace.
with

final as (
    select
        status,
        count(*) as runs,
        workspace
    from active_runs
    group by status, workspace
)

select * from final
order by runs desc, status, workspace
