-- Active runs, newest first, each with its experiment's primary metric (or mse where the
-- experiment has none and the run logged mse).
with

shown_metric as (
    select
        active_runs.run_id,
        coalesce(experiment_primary_metric.metric_key, fallback.key) as metric_key
    from active_runs
    left join experiment_primary_metric
        on experiment_primary_metric.experiment_id = active_runs.experiment_id
    left join metrics as fallback
        on fallback.run_id = active_runs.run_id
        and fallback.key = 'mse'
),

final as (
    select
        active_runs.run_id,
        active_runs.experiment_name,
        active_runs.run_name,
        active_runs.status,
        active_runs.start_time,
        shown_metric.metric_key,
        metrics.value as metric_value,
        active_runs.source_type,
        active_runs.user_id,
        active_runs.estimator_name,
        active_runs.root_run_id,
        active_runs.experiment_id
    from active_runs
    inner join shown_metric on shown_metric.run_id = active_runs.run_id
    left join metrics
        on metrics.run_id = active_runs.run_id
        and metrics.key = shown_metric.metric_key
)

select * from final
order by start_time desc nulls last, run_id
