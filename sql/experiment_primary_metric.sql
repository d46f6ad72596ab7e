-- The metric each experiment's leaderboard ranks by, and the metric its nested searches
-- rank their children by (child_*).
--
-- Which runs a leaderboard ranks (leaderboard_runs): the first leaderboard_scope entry
-- whose glob matches the experiment's name (an exact name first, then the order listed;
-- the last entry, '*', is report.leaderboard_runs): 'root' (runs without an
-- mlflow.parentRunId tag, the default), 'all', or 'children' (nested children only).
-- Where no root run has a finite value of the root runs' metric (PyCaret logs its models
-- as children of a session run that logs none), 'root' ranks 'all' the runs instead.
--
-- The leaderboard's metric, from the first of: [metrics.primary] (primary_metric_choices;
-- source 'config'), the mlflow.experiment.primaryMetric.* tags (source 'tag'), else the
-- naming rule over the runs it ranks (source 'rule'). With leaderboard_runs = 'children'
-- it is the child metric.
-- The child metric, from the first of: [metrics.children] (child_metric_choices; source
-- 'config'), the leaderboard's [metrics.primary] choice or tag when some nested child of
-- the experiment logged that key (its source), else the naming rule over the children.
-- The naming rule: among the keys with a direction (metric_key_directions) that those
-- active runs logged, a training key below a key of the same kind that is not one, then
-- the key logged by the most runs, then the first key by name (ignoring case, so Accuracy
-- comes before AUC). Directions come from metric_key_directions; a tag's greaterIsBetter
-- wins for the tagged key.
-- Each heavy input is read once or twice: Spark inlines every reference to a CTE or view.
with

scope_matches as (
    select
        experiments.experiment_id,
        leaderboard_scope.runs,
        row_number() over (
            partition by experiments.experiment_id
            order by leaderboard_scope.is_exact desc, leaderboard_scope.position
        ) as preference
    from experiments
    inner join leaderboard_scope
        on experiments.name like leaderboard_scope.name_like escape '\'
),

experiment_scope as (
    select
        experiments.experiment_id,
        experiments.name as experiment_name,
        coalesce(scope_matches.runs, 'root') as leaderboard_runs
    from experiments
    left join scope_matches
        on scope_matches.experiment_id = experiments.experiment_id
        and scope_matches.preference = 1
),

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

-- [metrics.primary] ('primary') and [metrics.children] ('children') per experiment
config_matches as (
    select
        experiments.experiment_id,
        'primary' as run_set,
        primary_metric_choices.metric_key,
        primary_metric_choices.is_exact,
        primary_metric_choices.position
    from experiments
    inner join primary_metric_choices
        on experiments.name like primary_metric_choices.name_like escape '\'

    union all

    select
        experiments.experiment_id,
        'children' as run_set,
        child_metric_choices.metric_key,
        child_metric_choices.is_exact,
        child_metric_choices.position
    from experiments
    inner join child_metric_choices
        on experiments.name like child_metric_choices.name_like escape '\'
),

config_choice as (
    select *
    from (
        select
            experiment_id,
            run_set,
            metric_key,
            row_number() over (
                partition by experiment_id, run_set
                order by is_exact desc, position
            ) as preference
        from config_matches
    ) as ordered
    where preference = 1
),

-- each active run's nesting, from the mlflow.parentRunId tag (as run_overview has it)
active_run_nesting as (
    select
        runs.experiment_id,
        runs.run_id,
        parent_tags.run_id is null as is_root
    from runs
    left join tags as parent_tags
        on parent_tags.run_id = runs.run_id
        and parent_tags.key = 'mlflow.parentRunId'
    where runs.lifecycle_stage = 'active'
),

-- per run set ('all', 'root', 'children') and key: the runs logging it, with a finite value
logged_keys as (
    select
        active_run_nesting.experiment_id,
        run_sets.run_set,
        metric_values.key as metric_key,
        count(*) as runs_logging,
        count(*) filter (where metric_values.is_finite) as finite_runs
    from metric_values
    inner join active_run_nesting on active_run_nesting.run_id = metric_values.run_id
    inner join (
        select 'all' as run_set
        union all
        select 'root' as run_set
        union all
        select 'children' as run_set
    ) as run_sets
        on run_sets.run_set = 'all'
        or (run_sets.run_set = 'root') = active_run_nesting.is_root
    group by active_run_nesting.experiment_id, run_sets.run_set, metric_values.key
),

rule_keys as (
    select
        logged_keys.experiment_id,
        logged_keys.run_set,
        logged_keys.metric_key,
        logged_keys.runs_logging,
        metric_key_directions.greater_is_better,
        -- a training key with a key of the same kind that is not one
        metric_key_directions.is_training and max(
            case when metric_key_directions.is_training then 0 else 1 end
        ) over (
            partition by
                logged_keys.experiment_id, logged_keys.run_set, metric_key_directions.metric_kind
        ) = 1 as is_outranked
    from logged_keys
    inner join metric_key_directions
        on metric_key_directions.metric_key = logged_keys.metric_key
        and metric_key_directions.greater_is_better is not null
),

rule_choice as (
    select *
    from (
        select
            experiment_id,
            run_set,
            metric_key,
            greater_is_better,
            row_number() over (
                partition by experiment_id, run_set
                order by is_outranked, runs_logging desc, lower(metric_key), metric_key
            ) as preference
        from rule_keys
    ) as ordered
    where preference = 1
),

-- every candidate of each run set with its priority; the config's and the tag's key serve
-- the children only when a child logged it (children_only)
candidates as (
    select
        config_choice.experiment_id,
        board_sets.run_set,
        config_choice.metric_key,
        'config' as source,
        case when board_sets.run_set = 'children' then 2 else 1 end as priority,
        cast(null as boolean) as rule_greater_is_better
    from config_choice
    cross join (
        select 'all' as run_set
        union all
        select 'root' as run_set
        union all
        select 'children' as run_set
    ) as board_sets
    where config_choice.run_set = 'primary'

    union all

    select
        experiment_id,
        'children' as run_set,
        metric_key,
        'config' as source,
        1 as priority,
        cast(null as boolean) as rule_greater_is_better
    from config_choice
    where run_set = 'children'

    union all

    select
        experiment_tag_values.experiment_id,
        board_sets.run_set,
        experiment_tag_values.tagged_key as metric_key,
        'tag' as source,
        3 as priority,
        cast(null as boolean) as rule_greater_is_better
    from experiment_tag_values
    cross join (
        select 'all' as run_set
        union all
        select 'root' as run_set
        union all
        select 'children' as run_set
    ) as board_sets
    where experiment_tag_values.tagged_key is not null

    union all

    select
        experiment_id,
        run_set,
        metric_key,
        'rule' as source,
        4 as priority,
        greater_is_better as rule_greater_is_better
    from rule_choice
),

chosen as (
    select *
    from (
        select
            candidates.*,
            logged_keys.finite_runs,
            row_number() over (
                partition by candidates.experiment_id, candidates.run_set
                order by candidates.priority
            ) as preference
        from candidates
        left join logged_keys
            on logged_keys.experiment_id = candidates.experiment_id
            and logged_keys.run_set = candidates.run_set
            and logged_keys.metric_key = candidates.metric_key
        where candidates.run_set <> 'children'
            or candidates.priority = 1
            or candidates.source = 'rule'
            or logged_keys.metric_key is not null
    ) as ordered
    where preference = 1
),

directed as (
    select
        chosen.experiment_id,
        chosen.run_set,
        chosen.metric_key,
        chosen.source,
        coalesce(chosen.finite_runs, 0) > 0 as has_values,
        case
            when chosen.source = 'rule' then chosen.rule_greater_is_better
            when chosen.source = 'tag' and experiment_tag_values.tagged_direction = 'true'
                then true
            when chosen.source = 'tag' and experiment_tag_values.tagged_direction = 'false'
                then false
            else metric_key_directions.greater_is_better
        end as greater_is_better
    from chosen
    left join experiment_tag_values
        on experiment_tag_values.experiment_id = chosen.experiment_id
    left join metric_key_directions on metric_key_directions.metric_key = chosen.metric_key
),

-- one row per experiment: the choice of each run set side by side
choices as (
    select
        experiment_id,
        max(case when run_set = 'root' then metric_key end) as root_key,
        max(case when run_set = 'root' then greater_is_better end) as root_greater,
        max(case when run_set = 'root' then source end) as root_source,
        max(case when run_set = 'root' then has_values end) as root_has_values,
        max(case when run_set = 'all' then metric_key end) as all_key,
        max(case when run_set = 'all' then greater_is_better end) as all_greater,
        max(case when run_set = 'all' then source end) as all_source,
        max(case when run_set = 'children' then metric_key end) as child_key,
        max(case when run_set = 'children' then greater_is_better end) as child_greater,
        max(case when run_set = 'children' then source end) as child_source
    from directed
    group by experiment_id
),

scoped as (
    select
        experiment_scope.experiment_id,
        experiment_scope.experiment_name,
        case
            when experiment_scope.leaderboard_runs = 'root' and not coalesce(
                choices.root_has_values, false
            ) then 'all'
            else experiment_scope.leaderboard_runs
        end as leaderboard_runs,
        choices.root_key,
        choices.root_greater,
        choices.root_source,
        choices.all_key,
        choices.all_greater,
        choices.all_source,
        choices.child_key,
        choices.child_greater,
        choices.child_source
    from experiment_scope
    inner join choices on choices.experiment_id = experiment_scope.experiment_id
),

final as (
    select
        experiment_id,
        experiment_name,
        case leaderboard_runs
            when 'root' then root_key when 'all' then all_key else child_key
        end as metric_key,
        case leaderboard_runs
            when 'root' then root_greater when 'all' then all_greater else child_greater
        end as greater_is_better,
        case leaderboard_runs
            when 'root' then root_source when 'all' then all_source else child_source
        end as source,
        leaderboard_runs,
        child_key as child_metric_key,
        child_greater as child_greater_is_better,
        child_source
    from scoped
)

select * from final
where metric_key is not null or child_metric_key is not null
order by experiment_name, experiment_id
