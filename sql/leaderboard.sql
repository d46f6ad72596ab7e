-- The best active run of each active experiment on its primary metric: finite values
-- only (NaN and ±inf never win); ties go to the earliest start, then the smallest run_id.
with

primary_metric as (
    select *
    from experiment_primary_metric
    where greater_is_better is not null
),

candidates as (
    select
        primary_metric.experiment_id,
        primary_metric.experiment_name,
        primary_metric.metric_key,
        primary_metric.greater_is_better,
        run_overview.run_id,
        run_overview.run_name,
        metrics.value,
        run_overview.estimator_name,
        run_overview.start_time
    from primary_metric
    inner join run_overview on run_overview.experiment_id = primary_metric.experiment_id
    inner join metrics
        on metrics.run_id = run_overview.run_id
        and metrics.key = primary_metric.metric_key
    where
        run_overview.lifecycle_stage = 'active'
        and run_overview.experiment_lifecycle_stage = 'active'
        and isfinite(metrics.value)
        -- MLflow's SQL stores save ±inf as ±1.7976931348623157e308, the largest double
        and abs(metrics.value) < 1.7976931348623157e308
),

ranked as (
    select
        *,
        count(*) over (partition by experiment_id) as runs_compared,
        row_number() over (
            partition by experiment_id
            order by
                case when greater_is_better then -value else value end,
                start_time,
                run_id
        ) as rank
    from candidates
),

final as (
    select
        experiment_id,
        experiment_name,
        metric_key,
        greater_is_better,
        run_id,
        run_name,
        value,
        estimator_name,
        start_time,
        runs_compared
    from ranked
    where rank = 1
)

select * from final
order by experiment_name, experiment_id
