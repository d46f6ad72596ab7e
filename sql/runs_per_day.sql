-- Active runs per start date (in the settings time zone), by status: the article's
-- df.groupby("start_date")["run_id"].count() plus a column per status.
with

dated_runs as (
    select start_date, status
    from active_runs
    where start_date is not null
),

final as (
    select
        start_date,
        count(*) as runs,
        count(*) filter (where status = 'FINISHED') as finished,
        count(*) filter (where status = 'FAILED') as failed,
        count(*) filter (where status = 'KILLED') as killed,
        count(*) filter (where status = 'RUNNING') as running,
        count(*) filter (where status = 'SCHEDULED') as scheduled
    from dated_runs
    group by start_date
)

select * from final
order by start_date
