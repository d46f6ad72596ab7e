-- One row per active run with active child runs (a hyperparameter search, GridSearchCV
-- under autolog, ...): how many direct children and the best of them on the experiment's
-- primary metric (finite values only; ties go to the earliest start, then run_id).
with

children as (
    select
        parent.run_id as parent_run_id,
        parent.experiment_id as parent_experiment_id,
        child.run_id,
        child.run_name,
        child.start_time
    from active_runs as parent
    inner join active_runs as child
        on child.parent_run_id = parent.run_id
        and child.run_id <> parent.run_id
),

child_counts as (
    select
        parent_run_id,
        count(*) as child_count
    from children
    group by parent_run_id
),

scored_children as (
    select
        children.parent_run_id,
        children.run_id,
        children.run_name,
        metric_values.value,
        row_number() over (
            partition by children.parent_run_id
            order by
                case
                    when experiment_primary_metric.greater_is_better then -metric_values.value
                    else metric_values.value
                end,
                children.start_time,
                children.run_id
        ) as rank
    from children
    inner join experiment_primary_metric
        on experiment_primary_metric.experiment_id = children.parent_experiment_id
        and experiment_primary_metric.greater_is_better is not null
    inner join metric_values
        on metric_values.run_id = children.run_id
        and metric_values.key = experiment_primary_metric.metric_key
    where metric_values.is_finite
),

final as (
    select
        parent.run_id as parent_run_id,
        parent.run_name as parent_run_name,
        parent.experiment_id,
        parent.experiment_name,
        parent.start_time,
        child_counts.child_count,
        experiment_primary_metric.metric_key,
        best.run_id as best_child_run_id,
        best.run_name as best_child_run_name,
        best.value as best_child_value
    from active_runs as parent
    inner join child_counts on child_counts.parent_run_id = parent.run_id
    left join experiment_primary_metric
        on experiment_primary_metric.experiment_id = parent.experiment_id
    left join scored_children as best
        on best.parent_run_id = parent.run_id
        and best.rank = 1
)

select * from final
order by start_time desc nulls last, parent_run_id
