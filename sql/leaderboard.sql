-- The best run of each active experiment among the runs its leaderboard ranks (see
-- ranked_runs: root runs by default, on the experiment's primary metric; source: where
-- the metric came from, see experiment_primary_metric): finite values only (NaN and ±inf
-- never win). tied_runs: how many runs share the best value; of those the earliest
-- started wins, then the smallest run_id. group_runs, group_mean, group_std: the best
-- run's configuration (its params but the seeds) over its runs, see leaderboard_groups.
with

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
        tied_runs,
        leaderboard_runs,
        group_runs,
        group_mean,
        group_std
    from ranked_runs
    where rank = 1
)

select * from final
order by experiment_name, experiment_id
