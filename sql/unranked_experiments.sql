-- Active experiments with active runs but no leaderboard row, and why: 'no_metric' (no
-- tag, no config choice, and no logged key whose direction is known), 'no_direction'
-- (the chosen key's direction is unknown: say it in [metrics]) or 'no_value' (no active
-- run logged a finite value of the chosen key).
with

experiment_runs as (
    select
        experiment_id,
        any_value(experiment_name) as experiment_name,
        count(*) as runs
    from active_runs
    group by experiment_id
),

final as (
    select
        experiment_runs.experiment_id,
        experiment_runs.experiment_name,
        experiment_runs.runs,
        experiment_primary_metric.metric_key,
        experiment_primary_metric.source,
        case
            when experiment_primary_metric.metric_key is null then 'no_metric'
            when experiment_primary_metric.greater_is_better is null then 'no_direction'
            else 'no_value'
        end as reason
    from experiment_runs
    left join experiment_primary_metric
        on experiment_primary_metric.experiment_id = experiment_runs.experiment_id
    left join leaderboard on leaderboard.experiment_id = experiment_runs.experiment_id
    where leaderboard.experiment_id is null
)

select * from final
order by experiment_name, experiment_id
