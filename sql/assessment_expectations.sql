-- Per experiment and expectation name: the ground truth logged on traces
-- (mlflow.log_expectation): how many traces carry one, how many distinct values, and the
-- first and last time one was logged. Expectations are no verdicts: assessment_pass_rates
-- leaves them out.
with

expectations as (
    select
        traces.experiment_id,
        trace_assessments.trace_id,
        trace_assessments.name,
        trace_assessments.value,
        trace_assessments.source_type,
        trace_assessments.create_time
    from trace_assessments
    inner join traces on traces.trace_id = trace_assessments.trace_id
    where trace_assessments.assessment_type = 'expectation'
        and trace_assessments.valid is not false
),

final as (
    select
        expectations.experiment_id,
        experiments.name as experiment_name,
        expectations.name as expectation_name,
        count(*) as expectations,
        count(distinct expectations.trace_id) as traces,
        count(distinct expectations.value) as distinct_values,
        string_agg(distinct expectations.source_type, ', ' order by expectations.source_type)
            as source_types,
        min(expectations.create_time) as first_logged,
        max(expectations.create_time) as last_logged
    from expectations
    left join experiments on experiments.experiment_id = expectations.experiment_id
    group by expectations.experiment_id, experiments.name, expectations.name
)

select * from final
order by experiment_name, experiment_id, expectation_name
