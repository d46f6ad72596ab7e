-- Active runs per status.
with

final as (
    select
        status,
        count(*) as runs
    from active_runs
    group by status
)

select * from final
order by runs desc, status
