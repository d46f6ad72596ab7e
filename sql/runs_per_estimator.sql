-- Active runs per estimator (run_overview.estimator_name: by default the estimator_name tag
-- sklearn autolog writes; report.estimator_from names another tag or param, or run_name):
-- the article's df.groupby("tags.estimator_name")["run_id"].count(). Runs without one are
-- left out, as pandas drops missing group keys. A row per MLflow workspace too.
with

final as (
    select
        estimator_name,
        count(*) as runs,
        count(*) filter (where status = 'FINISHED') as finished,
        count(*) filter (where status = 'FAILED') as failed,
        min(start_time) as first_start,
        max(start_time) as last_start,
        workspace
    from active_runs
    where estimator_name is not null
    group by estimator_name, workspace
)

select * from final
order by runs desc, estimator_name, workspace
