-- Active runs still RUNNING longer than runreport_settings.zombie_after_hours after they
-- started, each with what it is: a nested parent whose children have all ended is a
-- 'parent left open' (PyCaret and hand-written searches leave them so), any other a
-- 'zombie' (most were killed without MLflow hearing of it). is_ignored: the experiment
-- matches a zombie_ignore glob (zombie_runs and parents_left_open leave those out).
with

settings as (
    select zombie_after_hours from runreport_settings
),

long_running as (
    select
        active_runs.run_id,
        active_runs.experiment_id,
        active_runs.experiment_name,
        active_runs.run_name,
        active_runs.user_id,
        active_runs.start_time,
        cast(date_diff('millisecond', active_runs.start_time, now()) as double) / 3600000
            as hours_running
    from active_runs
    where active_runs.status = 'RUNNING'
),

children as (
    select
        parent_run_id,
        count(*) as child_count,
        count(*) filter (where status = 'RUNNING') as running_children,
        max(end_time) as last_child_end
    from active_runs
    where parent_run_id is not null and parent_run_id <> run_id
    group by parent_run_id
),

ignored as (
    select distinct experiments.experiment_id
    from experiments
    inner join zombie_ignore on experiments.name like zombie_ignore.name_like escape '\'
),

final as (
    select
        long_running.*,
        coalesce(children.child_count, 0) as child_count,
        children.last_child_end,
        case
            when children.child_count > 0 and children.running_children = 0
                then 'parent left open'
            else 'zombie'
        end as kind,
        ignored.experiment_id is not null as is_ignored
    from long_running
    cross join settings
    left join children on children.parent_run_id = long_running.run_id
    left join ignored on ignored.experiment_id = long_running.experiment_id
    where long_running.hours_running > settings.zombie_after_hours
)

select * from final
order by start_time, run_id
