-- Every alias change seen, newest first; the report keeps those in its window
-- (model_alias_history: MLflow keeps no history, so runreport records what each extract
-- sees; it starts with the first extract).
-- change: 'first_seen' (the alias was already set when the history began), 'set' (a new
-- alias), 'moved' (to another version) or 'removed' (version NULL).
with

history as (
    select
        observed_at,
        name,
        alias,
        version,
        lag(version) over (partition by name, alias order by observed_at) as previous_version,
        row_number() over (partition by name, alias order by observed_at) as observation
    from model_alias_history
),

final as (
    select
        observed_at,
        name,
        alias,
        previous_version,
        version,
        case
            when version is null then 'removed'
            when observation = 1
                and observed_at = (select min(observed_at) from model_alias_history)
                then 'first_seen'
            when previous_version is null then 'set'
            else 'moved'
        end as change
    from history
)

select * from final
order by observed_at desc, name, alias
