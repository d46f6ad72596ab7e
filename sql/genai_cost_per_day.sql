-- Per day (in the settings time zone), experiment and model: the LLM calls the traces'
-- spans made, their tokens and cost (USD, as MLflow prices them), and how many traces
-- made them (trace_model_usage).
with

settings as (
    select timezone from runreport_settings
),

usage as (
    select
        traces.experiment_id,
        cast(traces.request_time at time zone settings.timezone as date) as day,
        trace_model_usage.trace_id,
        trace_model_usage.model_name,
        trace_model_usage.model_provider,
        trace_model_usage.calls,
        trace_model_usage.input_tokens,
        trace_model_usage.output_tokens,
        trace_model_usage.cost
    from trace_model_usage
    inner join traces on traces.trace_id = trace_model_usage.trace_id
    cross join settings
),

final as (
    select
        usage.day,
        usage.experiment_id,
        experiments.name as experiment_name,
        usage.model_name,
        usage.model_provider,
        sum(usage.cost) as cost,
        sum(usage.input_tokens) as input_tokens,
        sum(usage.output_tokens) as output_tokens,
        sum(usage.calls) as calls,
        count(distinct usage.trace_id) as traces
    from usage
    left join experiments on experiments.experiment_id = usage.experiment_id
    group by
        usage.day, usage.experiment_id, experiments.name, usage.model_name, usage.model_provider
)

select * from final
order by day desc, experiment_name, experiment_id, cost desc nulls last, model_name
