-- Active runs per estimator_name tag (sklearn autolog writes it): the article's
-- df.groupby("tags.estimator_name")["run_id"].count(). Runs without the tag are left
-- out, as pandas drops missing group keys.
with

final as (
    select
        estimator_name,
        count(*) as runs,
        count(*) filter (where status = 'FINISHED') as finished,
        count(*) filter (where status = 'FAILED') as failed,
        min(start_time) as first_start,
        max(start_time) as last_start
    from active_runs
    where estimator_name is not null
    group by estimator_name
)

select * from final
order by runs desc, estimator_name
