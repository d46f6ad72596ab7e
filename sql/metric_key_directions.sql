-- The direction of each metric key the warehouse knows (logged by a run, named by an
-- experiment's mlflow.experiment.primaryMetric.name tag or by [metrics.primary]):
-- greater_is_better from the metric_directions table (the built-in rule with the
-- [metrics] overrides over it), NULL when no entry matches the key. The one home of the
-- direction rule: experiment_primary_metric and metric_curves read it.
-- An entry is an exact key or a '*suffix' pattern, both matched without regard to case;
-- an exact entry wins over a pattern, a longer pattern over a shorter one.
-- metric_history adds no key: each of its keys is also in metrics, which holds every
-- run's latest value of each key it logged (and reading it here would scan every point).
with

known_keys as (
    select key as metric_key from metrics
    union
    select trim(value) as metric_key
    from experiment_tags
    where key = 'mlflow.experiment.primaryMetric.name' and trim(value) <> ''
    union
    select metric_key from primary_metric_choices
),

direction_matches as (
    select
        known_keys.metric_key,
        metric_directions.greater_is_better,
        row_number() over (
            partition by known_keys.metric_key
            order by
                starts_with(metric_directions.metric_key, '*'),
                length(metric_directions.metric_key) desc
        ) as preference
    from known_keys
    inner join metric_directions
        on lower(metric_directions.metric_key) = lower(known_keys.metric_key)
        or (
            starts_with(metric_directions.metric_key, '*')
            and ends_with(
                lower(known_keys.metric_key), lower(substr(metric_directions.metric_key, 2))
            )
        )
),

final as (
    select
        known_keys.metric_key,
        direction_matches.greater_is_better
    from known_keys
    left join direction_matches
        on direction_matches.metric_key = known_keys.metric_key
        and direction_matches.preference = 1
)

select * from final
order by metric_key
