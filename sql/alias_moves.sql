-- Every alias change seen, newest first; the report keeps those in its window
-- (model_alias_history: MLflow keeps no history, so runreport records what each extract
-- sees; it starts with the first extract).
-- kind: 'model' (a registered model's alias) or 'prompt' (a prompt's, set_prompt_alias).
-- workspace: the MLflow workspace of the model or prompt (names repeat across workspaces).
-- change: 'first_seen' (the alias was already set when the history of its kind began:
-- prompts' begins with the first extract that read them), 'set' (a new alias), 'moved'
-- (to another version) or 'removed' (version NULL).
with

history as (
    select
        observed_at,
        kind,
        name,
        alias,
        version,
        workspace,
        lag(version) over (partition by kind, workspace, name, alias order by observed_at)
            as previous_version,
        row_number() over (partition by kind, workspace, name, alias order by observed_at)
            as observation,
        min(observed_at) over (partition by kind) as history_start
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
            when observation = 1 and observed_at = history_start then 'first_seen'
            when previous_version is null then 'set'
            else 'moved'
        end as change,
        kind,
        workspace
    from history
)

select * from final
order by observed_at desc, kind, workspace, name, alias
