-- Active runs per user: MLflow's user_id, or where run_keys.user_tag names a tag (e.g.
-- owner), that tag's value on the runs that carry it. A row per MLflow workspace too.
with

settings as (
    select user_tag from run_keys
),

owner_tags as (
    select
        tags.run_id,
        max(tags.value) as owner
    from tags
    cross join settings
    where tags.key = settings.user_tag
    group by tags.run_id
),

final as (
    select
        coalesce(owner_tags.owner, active_runs.user_id) as user_id,
        count(*) as runs,
        count(*) filter (where active_runs.status = 'FINISHED') as finished,
        count(*) filter (where active_runs.status = 'FAILED') as failed,
        min(active_runs.start_time) as first_start,
        max(active_runs.start_time) as last_start,
        active_runs.workspace
    from active_runs
    left join owner_tags on owner_tags.run_id = active_runs.run_id
    group by coalesce(owner_tags.owner, active_runs.user_id), active_runs.workspace
)

select * from final
order by runs desc, user_id, workspace
