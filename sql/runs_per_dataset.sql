-- Each dataset (name and digest) the active runs logged as an input: how many runs and
-- experiments used it, in which contexts (the mlflow.data.context input tag), and when
-- it was first and last used.
with

inputs as (
    select
        run_inputs.dataset_name,
        run_inputs.dataset_digest,
        run_inputs.context,
        active_runs.run_id,
        active_runs.experiment_id,
        active_runs.start_time
    from run_inputs
    inner join active_runs on active_runs.run_id = run_inputs.run_id
),

final as (
    select
        inputs.dataset_name,
        inputs.dataset_digest,
        any_value(datasets.source_type) as source_type,
        count(distinct inputs.run_id) as runs,
        count(distinct inputs.experiment_id) as experiments,
        string_agg(distinct inputs.context, ', ' order by inputs.context) as contexts,
        min(inputs.start_time) as first_used,
        max(inputs.start_time) as last_used
    from inputs
    left join datasets
        on datasets.name = inputs.dataset_name
        and datasets.digest = inputs.dataset_digest
    group by inputs.dataset_name, inputs.dataset_digest
)

select * from final
order by runs desc, dataset_name, dataset_digest
