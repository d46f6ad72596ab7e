-- One row per active run with active child runs (a hyperparameter search, GridSearchCV
-- under autolog, ...): how many direct children and the best of them on the experiment's
-- child metric (experiment_primary_metric.child_metric_key: [metrics.children], else the
-- leaderboard's configured or tagged metric when children log it, else the naming rule
-- over the children; finite values only; ties go to the earliest start, then run_id).
with

children as (
    select
        parent.run_id as parent_run_id,
        child.run_id,
        child.run_name,
        child.start_time,
        child_metric.child_metric_key as metric_key,
        child_metric.child_greater_is_better as greater_is_better
    from active_runs as parent
    inner join active_runs as child
        on child.parent_run_id = parent.run_id
        and child.run_id <> parent.run_id
    left join experiment_primary_metric as child_metric
        on child_metric.experiment_id = parent.experiment_id
),

child_counts as (
    select
        parent_run_id,
        count(*) as child_count,
        max(metric_key) as metric_key
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
                case when children.greater_is_better then -metric_values.value
                    else metric_values.value
                end,
                children.start_time,
                children.run_id
        ) as rank
    from children
    inner join metric_values
        on metric_values.run_id = children.run_id
        and metric_values.key = children.metric_key
    where metric_values.is_finite and children.greater_is_better is not null
),

final as (
    select
        parent.run_id as parent_run_id,
        parent.run_name as parent_run_name,
        parent.experiment_id,
        parent.experiment_name,
        parent.start_time,
        child_counts.child_count,
        child_counts.metric_key,
        best.run_id as best_child_run_id,
        best.run_name as best_child_run_name,
        best.value as best_child_value
    from active_runs as parent
    inner join child_counts on child_counts.parent_run_id = parent.run_id
    left join scored_children as best
        on best.parent_run_id = parent.run_id
        and best.rank = 1
)

select * from final
order by start_time desc nulls last, parent_run_id
