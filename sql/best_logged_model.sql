-- The best logged model of each experiment, each model judged by its latest value of a
-- key (highest step, then newest, over every dataset): finite values only. The key is the
-- leaderboard's metric (experiment_primary_metric; source as there) when a model of the
-- experiment has a finite value of it, else the naming rule over the models' own keys
-- (source 'models'): among the keys with a direction (metric_key_directions), a training
-- key below a key of the same kind that is not one, then the key most models have a
-- finite value of, then the first by name. tied_models: how many models share the best
-- value; of those the earliest created wins.
with

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

model_values as (
    select
        logged_models.experiment_id,
        logged_models.model_id,
        logged_models.name as model_name,
        logged_models.source_run_id,
        logged_models.creation_time,
        latest_values.key,
        latest_values.value,
        latest_values.dataset_name
    from logged_models
    inner join latest_values
        on latest_values.model_id = logged_models.model_id
        and latest_values.recency = 1
    -- finite, as metric_values says it: SQL stores save ±inf as ±1.7976931348623157e308
    where not isnan(latest_values.value)
        and latest_values.value < 1.7976931348623157e308
        and latest_values.value > -1.7976931348623157e308
),

primary_choice as (
    select distinct
        experiment_primary_metric.experiment_id,
        experiment_primary_metric.metric_key,
        experiment_primary_metric.greater_is_better,
        experiment_primary_metric.source
    from experiment_primary_metric
    inner join model_values
        on model_values.experiment_id = experiment_primary_metric.experiment_id
        and model_values.key = experiment_primary_metric.metric_key
    where experiment_primary_metric.greater_is_better is not null
),

rule_keys as (
    select
        model_values.experiment_id,
        model_values.key as metric_key,
        metric_key_directions.greater_is_better,
        metric_key_directions.is_training,
        metric_key_directions.metric_kind,
        count(*) as models_logging
    from model_values
    inner join metric_key_directions
        on metric_key_directions.metric_key = model_values.key
        and metric_key_directions.greater_is_better is not null
    group by
        model_values.experiment_id,
        model_values.key,
        metric_key_directions.greater_is_better,
        metric_key_directions.is_training,
        metric_key_directions.metric_kind
),

ranked_keys as (
    select
        *,
        -- a training key with a key of the same kind that is not one
        is_training and max(case when is_training then 0 else 1 end) over (
            partition by experiment_id, metric_kind
        ) = 1 as is_outranked
    from rule_keys
),

rule_choice as (
    select
        experiment_id,
        metric_key,
        greater_is_better,
        row_number() over (
            partition by experiment_id
            order by is_outranked, models_logging desc, lower(metric_key), metric_key
        ) as preference
    from ranked_keys
),

chosen as (
    select experiment_id, metric_key, greater_is_better, source
    from primary_choice

    union all

    select
        rule_choice.experiment_id,
        rule_choice.metric_key,
        rule_choice.greater_is_better,
        'models' as source
    from rule_choice
    left join primary_choice on primary_choice.experiment_id = rule_choice.experiment_id
    where rule_choice.preference = 1 and primary_choice.experiment_id is null
),

candidates as (
    select
        chosen.experiment_id,
        experiments.name as experiment_name,
        chosen.metric_key,
        chosen.greater_is_better,
        chosen.source,
        model_values.model_id,
        model_values.model_name,
        model_values.source_run_id,
        model_values.creation_time,
        model_values.value,
        model_values.dataset_name
    from chosen
    inner join experiments on experiments.experiment_id = chosen.experiment_id
    inner join model_values
        on model_values.experiment_id = chosen.experiment_id
        and model_values.key = chosen.metric_key
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
        tied_models,
        source
    from ranked
    where rank = 1
)

select * from final
order by experiment_name, experiment_id
