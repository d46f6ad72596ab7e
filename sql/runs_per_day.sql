-- Active runs per start date (in the settings time zone), by status: the article's
-- df.groupby("start_date")["run_id"].count() plus a column per status; a row per MLflow
-- workspace (a store without workspaces has one: default).
-- The active runs are active_runs' (active runs of active experiments), read here from
-- runs and experiments with the same joins as run_overview: the nesting, tag and param
-- columns of active_runs cost seconds at a million runs and are not needed here.
with

settings as (
    select runreport_settings.timezone
    from runreport_settings
    cross join run_keys
),

dated_runs as (
    select
        cast(runs.start_time at time zone settings.timezone as date) as start_date,
        runs.status,
        experiments.workspace
    from runs
    cross join settings
    left join experiments on experiments.experiment_id = runs.experiment_id
    where runs.lifecycle_stage = 'active'
        and experiments.lifecycle_stage = 'active'
        and runs.start_time is not null
),

final as (
    select
        start_date,
        count(*) as runs,
        count(*) filter (where status = 'FINISHED') as finished,
        count(*) filter (where status = 'FAILED') as failed,
        count(*) filter (where status = 'KILLED') as killed,
        count(*) filter (where status = 'RUNNING') as running,
        count(*) filter (where status = 'SCHEDULED') as scheduled,
        workspace
    from dated_runs
    group by start_date, workspace
)

select * from final
order by start_date, workspace
