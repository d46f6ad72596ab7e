-- The best logged model of each active experiment on the experiment's primary metric
-- (see experiment_primary_metric), each model judged by its latest value of that metric
-- (highest step, then newest, over every dataset): finite values only. tied_models: how
-- many models share the best value; of those the earliest created wins.
with

primary_metric as (
    select *
    from experiment_primary_metric
    where greater_is_better is not null
),

latest_values as (
    select
        model_id,
        key,
        value,
        dataset_name,
        row_number() over (
            partition by model_id, key
            order by step desc, timestamp desc, value
        ) as recency
    from logged_model_metrics
),

candidates as (
    select
        primary_metric.experiment_id,
        primary_metric.experiment_name,
        primary_metric.metric_key,
        primary_metric.greater_is_better,
        logged_models.model_id,
        logged_models.name as model_name,
        logged_models.source_run_id,
        logged_models.creation_time,
        latest_values.value,
        latest_values.dataset_name
    from primary_metric
    inner join logged_models on logged_models.experiment_id = primary_metric.experiment_id
    inner join latest_values
        on latest_values.model_id = logged_models.model_id
        and latest_values.key = primary_metric.metric_key
        and latest_values.recency = 1
    -- finite, as metric_values says it: SQL stores save ±inf as ±1.7976931348623157e308
    where not isnan(latest_values.value)
        and latest_values.value < 1.7976931348623157e308
        and latest_values.value > -1.7976931348623157e308
),

ranked as (
    select
        *,
        count(*) over (partition by experiment_id) as models_compared,
        count(*) over (partition by experiment_id, value) as tied_models,
        row_number() over (
            partition by experiment_id
            order by
                case when greater_is_better then -value else value end,
                creation_time,
                model_id
        ) as rank
    from candidates
),

final as (
    select
        experiment_id,
        experiment_name,
        metric_key,
        greater_is_better,
        model_id,
        model_name,
        value,
        dataset_name,
        source_run_id,
        creation_time,
        models_compared,
        tied_models
    from ranked
    where rank = 1
)

select * from final
order by experiment_name, experiment_id
