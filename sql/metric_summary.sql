-- Each metric key over the active runs that logged it (each run's latest value, as
-- search_runs shows it): min, max and mean of the finite values, and the value logged
-- last (by metric timestamp; ties go to the later-started run, then the larger run_id).
with

active_metrics as (
    select
        metrics.key as metric_key,
        metrics.value,
        -- MLflow's SQL stores save ±inf as ±1.7976931348623157e308, the largest double
        isfinite(metrics.value) and abs(metrics.value) < 1.7976931348623157e308 as is_finite,
        metrics.timestamp,
        metrics.run_id,
        run_overview.start_time
    from metrics
    inner join run_overview on run_overview.run_id = metrics.run_id
    where
        run_overview.lifecycle_stage = 'active'
        and run_overview.experiment_lifecycle_stage = 'active'
),

ranked as (
    select
        *,
        row_number() over (
            partition by metric_key
            order by timestamp desc nulls last, start_time desc nulls last, run_id desc
        ) as recency
    from active_metrics
),

summary as (
    select
        metric_key,
        count(*) as runs,
        min(value) filter (where is_finite) as min_value,
        max(value) filter (where is_finite) as max_value,
        avg(value) filter (where is_finite) as mean_value
    from active_metrics
    group by metric_key
),

final as (
    select
        summary.*,
        ranked.value as latest_value,
        ranked.run_id as latest_run_id
    from summary
    inner join ranked on ranked.metric_key = summary.metric_key and ranked.recency = 1
)

select * from final
order by metric_key
