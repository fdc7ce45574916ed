"""Safe rollout: plans, the canary judge, the controller that runs them, and the shadow report.

- :mod:`~modelwarden.rollout.plan`: rollout plans as YAML (steps, holds, scope, gates, judge);
- :mod:`~modelwarden.rollout.judge`: canary against stable over the same window;
- :mod:`~modelwarden.rollout.controller`: ``tick`` advances, holds or rolls back, persisted;
- :mod:`~modelwarden.rollout.rollback`: the rollback transaction;
- :mod:`~modelwarden.rollout.shadow`: shadow copies paired with live answers and ranked.
"""
