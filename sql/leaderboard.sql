-- The best active run of each active experiment on its primary metric (source: where the
-- metric came from, see experiment_primary_metric): finite values only (NaN and ±inf
-- never win). tied_runs: how many runs share the best value; of those the earliest
-- started wins, then the smallest run_id.
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
        primary_metric.source,
        active_runs.run_id,
        active_runs.run_name,
        metric_values.value,
        active_runs.estimator_name,
        active_runs.start_time
    from primary_metric
    inner join active_runs on active_runs.experiment_id = primary_metric.experiment_id
    inner join metric_values
        on metric_values.run_id = active_runs.run_id
        and metric_values.key = primary_metric.metric_key
    where metric_values.is_finite
),

ranked as (
    select
        *,
        count(*) over (partition by experiment_id) as runs_compared,
        count(*) over (partition by experiment_id, value) as tied_runs,
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
        runs_compared,
        source,
        tied_runs
    from ranked
    where rank = 1
)

select * from final
order by experiment_name, experiment_id
