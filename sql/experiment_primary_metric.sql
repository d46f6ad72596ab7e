-- The metric each experiment is judged by, from the first of: the team's choice in
-- primary_metric_choices ([metrics.primary] of the config; source 'config'; an exact name
-- wins over a glob, then the first listed), the mlflow.experiment.primaryMetric.* tags
-- (source 'tag'), else the metric key its active runs log most often among the keys with
-- a direction (source 'rule'; ties go to the first key by name). Directions come from
-- metric_key_directions.
with

experiment_tag_values as (
    select
        experiment_id,
        nullif(trim(max(value) filter (
            where key = 'mlflow.experiment.primaryMetric.name'
        )), '') as tagged_key,
        lower(trim(max(value) filter (
            where key = 'mlflow.experiment.primaryMetric.greaterIsBetter'
        ))) as tagged_direction
    from experiment_tags
    group by experiment_id
),

config_matches as (
    select
        experiments.experiment_id,
        primary_metric_choices.metric_key,
        row_number() over (
            partition by experiments.experiment_id
            order by primary_metric_choices.is_exact desc, primary_metric_choices.position
        ) as preference
    from experiments
    inner join primary_metric_choices
        on experiments.name like primary_metric_choices.name_like escape '\'
),

config_choice as (
    select experiment_id, metric_key
    from config_matches
    where preference = 1
),

logged_keys as (
    select
        runs.experiment_id,
        metrics.key as metric_key,
        count(*) as runs_logging
    from metrics
    inner join runs on runs.run_id = metrics.run_id
    where runs.lifecycle_stage = 'active'
    group by runs.experiment_id, metrics.key
),

rule_choice as (
    select
        logged_keys.experiment_id,
        logged_keys.metric_key,
        metric_key_directions.greater_is_better,
        row_number() over (
            partition by logged_keys.experiment_id
            order by logged_keys.runs_logging desc, logged_keys.metric_key
        ) as preference
    from logged_keys
    inner join metric_key_directions
        on metric_key_directions.metric_key = logged_keys.metric_key
        and metric_key_directions.greater_is_better is not null
),

chosen as (
    select
        experiments.experiment_id,
        experiments.name as experiment_name,
        coalesce(
            config_choice.metric_key, experiment_tag_values.tagged_key, rule_choice.metric_key
        ) as metric_key,
        case
            when config_choice.metric_key is not null then 'config'
            when experiment_tag_values.tagged_key is not null then 'tag'
            else 'rule'
        end as source,
        experiment_tag_values.tagged_direction,
        rule_choice.greater_is_better as rule_greater_is_better
    from experiments
    left join config_choice on config_choice.experiment_id = experiments.experiment_id
    left join experiment_tag_values
        on experiment_tag_values.experiment_id = experiments.experiment_id
    left join rule_choice
        on rule_choice.experiment_id = experiments.experiment_id
        and rule_choice.preference = 1
),

final as (
    select
        chosen.experiment_id,
        chosen.experiment_name,
        chosen.metric_key,
        case
            when chosen.source = 'rule' then chosen.rule_greater_is_better
            when chosen.source = 'tag' and chosen.tagged_direction = 'true' then true
            when chosen.source = 'tag' and chosen.tagged_direction = 'false' then false
            else key_direction.greater_is_better
        end as greater_is_better,
        chosen.source
    from chosen
    left join metric_key_directions as key_direction
        on key_direction.metric_key = chosen.metric_key
    where chosen.metric_key is not null
)

select * from final
order by experiment_name, experiment_id
