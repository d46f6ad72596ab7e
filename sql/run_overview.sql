-- One row per run, deleted runs and runs of deleted experiments too, with nesting resolved,
-- and the MLflow workspace of its experiment.
-- Nesting comes from the mlflow.parentRunId tag; the root and depth come from walking
-- those tags upward (OSS MLflow never writes mlflow.rootRunId; Databricks does).
-- estimator_name comes from where run_keys.estimator_from says: a tag of that key, else a
-- param of that key (default: the estimator_name tag sklearn autolog writes), or the run
-- name of a run that is no nested parent when it says 'run_name' (PyCaret names its model
-- runs after their model, and their session run "Session Initialized ...").
with recursive

settings as (
    select
        runreport_settings.timezone,
        run_keys.estimator_from
    from runreport_settings
    cross join run_keys
),

run_tags as (
    select
        run_id,
        max(value) filter (where key = 'mlflow.parentRunId') as parent_run_id,
        max(value) filter (where key = 'mlflow.rootRunId') as databricks_root_run_id,
        max(value) filter (where key = settings.estimator_from) as estimator_tag,
        max(value) filter (where key = 'estimator_class') as estimator_class,
        max(value) filter (where key = 'mlflow.source.type') as source_type
    from tags
    cross join settings
    where key in (
        'mlflow.parentRunId',
        'mlflow.rootRunId',
        'estimator_class',
        'mlflow.source.type'
    ) or key = settings.estimator_from
    group by run_id
),

estimator_params as (
    select
        params.run_id,
        max(params.value) as estimator_param
    from params
    cross join settings
    where params.key = settings.estimator_from
    group by params.run_id
),

-- a parent the store does not hold ends the walk, so only existing parents are steps
existing_parent as (
    select
        run_tags.run_id,
        parent.run_id as parent_run_id
    from run_tags
    inner join runs as parent on parent.run_id = run_tags.parent_run_id
    where parent.run_id <> run_tags.run_id
),

-- every run that has an existing parent with each of its existing ancestors (a run
-- without one is its own root at depth 0: starting the walk from the nested children
-- alone keeps it small); the path stops a corrupt tag cycle and the depth cap bounds the
-- walk whatever the tags say
ancestors as (
    select
        run_id,
        parent_run_id as ancestor_id,
        1 as depth,
        [run_id, parent_run_id] as path
    from existing_parent

    union all

    select
        ancestors.run_id,
        existing_parent.parent_run_id as ancestor_id,
        ancestors.depth + 1 as depth,
        list_append(ancestors.path, existing_parent.parent_run_id) as path
    from ancestors
    inner join existing_parent on existing_parent.run_id = ancestors.ancestor_id
    where
        not list_contains(ancestors.path, existing_parent.parent_run_id)
        and ancestors.depth < 1000
),

walk_end as (
    select
        run_id,
        arg_max(ancestor_id, depth) as walk_root_id,
        max(depth) as depth
    from ancestors
    group by run_id
),

-- Databricks' rootRunId is used only where the walk stops short of it (a missing parent):
-- the run a walk's last run names in that tag, when the store holds it
tagged_root as (
    select
        run_tags.run_id,
        root.run_id as root_run_id
    from run_tags
    inner join runs as root on root.run_id = run_tags.databricks_root_run_id
    where root.run_id <> run_tags.run_id
),

-- the runs whose walk went up at least one parent; every other run ends its own walk
resolved_root as (
    select
        walk_end.run_id,
        coalesce(tagged_root.root_run_id, walk_end.walk_root_id) as root_run_id,
        walk_end.depth
    from walk_end
    left join tagged_root on tagged_root.run_id = walk_end.walk_root_id
),

child_counts as (
    select
        parent_run_id as run_id,
        count(*) as child_count
    from run_tags
    where parent_run_id is not null and parent_run_id <> run_id
    group by parent_run_id
),

final as (
    select
        runs.run_id,
        runs.experiment_id,
        experiments.name as experiment_name,
        runs.run_name,
        runs.status,
        runs.user_id,
        runs.start_time,
        runs.end_time,
        cast(runs.start_time at time zone settings.timezone as date) as start_date,
        cast(date_diff('millisecond', runs.start_time, runs.end_time) as double) / 1000
            as duration_seconds,
        runs.lifecycle_stage,
        run_tags.parent_run_id,
        coalesce(resolved_root.root_run_id, own_tagged_root.root_run_id, runs.run_id)
            as root_run_id,
        coalesce(resolved_root.depth, 0) as depth,
        coalesce(child_counts.child_count, 0) as child_count,
        coalesce(child_counts.child_count, 0) > 0 as is_nested_parent,
        run_tags.parent_run_id is not null as is_nested_child,
        case
            when settings.estimator_from <> 'run_name'
                then coalesce(run_tags.estimator_tag, estimator_params.estimator_param)
            -- a nested parent's name (PyCaret's "Session Initialized ...") names no model
            when child_counts.child_count is null then nullif(runs.run_name, '')
        end as estimator_name,
        run_tags.estimator_class,
        experiments.lifecycle_stage as experiment_lifecycle_stage,
        run_tags.source_type,
        experiments.workspace
    from runs
    cross join settings
    left join experiments on experiments.experiment_id = runs.experiment_id
    left join run_tags on run_tags.run_id = runs.run_id
    left join estimator_params on estimator_params.run_id = runs.run_id
    left join resolved_root on resolved_root.run_id = runs.run_id
    left join tagged_root as own_tagged_root on own_tagged_root.run_id = runs.run_id
    left join child_counts on child_counts.run_id = runs.run_id
)

select * from final
