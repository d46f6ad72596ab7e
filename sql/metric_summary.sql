-- Each metric key of each active experiment, over its active runs that logged it (each
-- run's latest value, as search_runs shows it): min, max and mean of the finite values,
-- and the value logged last (by metric timestamp; ties go to the later-started run, then
-- the larger run_id). Per experiment: one key can mean different things in two of them.
with

experiment_metrics as (
    select
        active_runs.experiment_id,
        active_runs.experiment_name,
        metric_values.key as metric_key,
        metric_values.value,
        metric_values.is_finite,
        metric_values.timestamp,
        metric_values.run_id,
        active_runs.start_time
    from metric_values
    inner join active_runs on active_runs.run_id = metric_values.run_id
),

ranked as (
    select
        *,
        row_number() over (
            partition by experiment_id, metric_key
            order by timestamp desc nulls last, start_time desc nulls last, run_id desc
        ) as recency
    from experiment_metrics
),

summary as (
    select
        experiment_id,
        any_value(experiment_name) as experiment_name,
        metric_key,
        count(*) as runs,
        min(value) filter (where is_finite) as min_value,
        max(value) filter (where is_finite) as max_value,
        avg(value) filter (where is_finite) as mean_value
    from experiment_metrics
    group by experiment_id, metric_key
),

final as (
    select
        summary.*,
        ranked.value as latest_value,
        ranked.run_id as latest_run_id
    from summary
    inner join ranked
        on ranked.experiment_id = summary.experiment_id
        and ranked.metric_key = summary.metric_key
        and ranked.recency = 1
)

select * from final
order by experiment_name, experiment_id, metric_key
