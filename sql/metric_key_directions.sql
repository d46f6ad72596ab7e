-- The direction of each metric key the warehouse knows (logged by a run or a logged model,
-- named by an experiment's mlflow.experiment.primaryMetric.name tag, by [metrics.primary]
-- or by [metrics.children]): greater_is_better from the metric_directions table (the
-- built-in rule with the [metrics] overrides over it), NULL when no entry matches the key.
-- The one home of the naming rule: experiment_primary_metric, best_logged_model and
-- metric_curves read it.
-- An entry is an exact key or a '*suffix' pattern, both matched without regard to case;
-- an exact entry wins over a pattern, a longer pattern over a shorter one.
-- is_training: the key names training data (a word train or training between
-- underscores: train_loss, training_accuracy_score, mean_train_score). metric_kind: the
-- key in lower case without its train, training, val, valid, validation, test or eval
-- word and without a trailing _score, so train_loss, val_loss and loss are one kind. The
-- naming rule ranks a training key below a key of the same kind that is not one.
-- metric_history adds no key: each of its keys is also in metrics, which holds every
-- run's latest value of each key it logged (and reading it here would scan every point).
with

known_keys as (
    select key as metric_key from metrics
    union
    select key as metric_key from logged_model_metrics
    union
    select trim(value) as metric_key
    from experiment_tags
    where key = 'mlflow.experiment.primaryMetric.name' and trim(value) <> ''
    union
    select metric_key from primary_metric_choices
    union
    select metric_key from child_metric_choices
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

-- each key between underscores, so that a word is matched whole at either end
final as (
    select
        metric_key,
        greater_is_better,
        padded like '%\_train\_%' escape '\' or padded like '%\_training\_%' escape '\'
            as is_training,
        trim(
            replace(replace(replace(replace(replace(replace(replace(replace(
                padded,
                '_score_', '_'),
                '_train_', '_'),
                '_training_', '_'),
                '_val_', '_'),
                '_valid_', '_'),
                '_validation_', '_'),
                '_test_', '_'),
                '_eval_', '_'),
            '_'
        ) as metric_kind
    from (
        select
            known_keys.metric_key,
            direction_matches.greater_is_better,
            '_' || lower(known_keys.metric_key) || '_' as padded
        from known_keys
        left join direction_matches
            on direction_matches.metric_key = known_keys.metric_key
            and direction_matches.preference = 1
    ) as keyed
)

select * from final
order by metric_key
