-- Every run a leaderboard ranks: the active runs of each active experiment that its
-- leaderboard_runs names (see experiment_primary_metric: root runs by default) with a
-- finite value of its metric (NaN and ±inf never rank). rank 1 is the leaderboard's best;
-- ties go to the earliest started run, then the smallest run_id. tied_runs: how many
-- share the run's value.
-- params: the run's configuration, its params but the seed keys (seed_params: seed,
-- random_state, random_seed and [metrics] seed_params) as 'key=value' by key, '' when it
-- logged seed keys only, NULL when it logged no param at all. Runs of one experiment with
-- the same params are one group (leaderboard_groups); a run without params is a group of
-- its own. group_runs, group_mean and group_std (the sample standard deviation, NULL for
-- one run) describe the run's group.
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
        primary_metric.leaderboard_runs,
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
        and (
            primary_metric.leaderboard_runs = 'all'
            or (primary_metric.leaderboard_runs = 'root' and active_runs.parent_run_id is null)
            or (
                primary_metric.leaderboard_runs = 'children'
                and active_runs.parent_run_id is not null
            )
        )
),

candidate_params as (
    select
        params.run_id,
        params.key,
        params.value,
        seed_params.param_key is not null as is_seed
    from params
    inner join candidates on candidates.run_id = params.run_id
    left join seed_params on seed_params.param_key = lower(params.key)
),

configurations as (
    select
        run_id,
        string_agg(key || '=' || value, ', ' order by key) as params
    from candidate_params
    where not is_seed
    group by run_id
),

runs_with_params as (
    select distinct run_id
    from candidate_params
),

grouped as (
    select
        candidates.*,
        case
            when runs_with_params.run_id is not null then coalesce(configurations.params, '')
        end as params
    from candidates
    left join runs_with_params on runs_with_params.run_id = candidates.run_id
    left join configurations on configurations.run_id = candidates.run_id
),

ranked as (
    select
        *,
        row_number() over (
            partition by experiment_id
            order by
                case when greater_is_better then -value else value end,
                start_time,
                run_id
        ) as rank,
        count(*) over (partition by experiment_id) as runs_compared,
        count(*) over (partition by experiment_id, value) as tied_runs,
        count(*) over (partition by experiment_id, coalesce(params, run_id)) as group_runs,
        avg(value) over (partition by experiment_id, coalesce(params, run_id)) as group_mean,
        stddev_samp(value) over (
            partition by experiment_id, coalesce(params, run_id)
        ) as group_std
    from grouped
),

final as (
    select
        experiment_id,
        experiment_name,
        metric_key,
        greater_is_better,
        source,
        leaderboard_runs,
        run_id,
        run_name,
        value,
        estimator_name,
        start_time,
        params,
        rank,
        runs_compared,
        tied_runs,
        group_runs,
        group_mean,
        group_std
    from ranked
)

select * from final
order by experiment_name, experiment_id, rank
