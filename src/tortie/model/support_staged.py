"""Support table of the staged policy kinds (see `tortie.model.support`): data only.

A staged policy's fields mean what the enforced kind's fields mean, in the pending verdict of flow
records and when `tortie policy promote` applies the policy: each field has the status of the same
field of the enforced kind. `stagedAction` is read by the pending evaluation and by promote; the
stages that flow records cannot show are refused (see `tortie.model.specs_staged`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tortie.model import specs_k8s as K
from tortie.model import specs_policy as P
from tortie.model import specs_staged as S
from tortie.model.support import FieldSupport, Rejected, impl, support_of, unless

STAGED_ACTION = impl("flows.pending", "cli.policy_promote_cmd")
_NO_STAGE = ("flow records come from the normal filter stage of endpoints, where a staged policy of this "
             "stage could not show its effect; apply the policy itself to use this stage")

TABLE: dict[tuple[type[Any], str], FieldSupport] = {
    **{(S.StagedNetworkPolicySpec, f.name): support_of(P.NetworkPolicySpec, f.name)
       for f in dataclasses.fields(P.NetworkPolicySpec)},
    **{(S.StagedGlobalNetworkPolicySpec, f.name): support_of(P.GlobalNetworkPolicySpec, f.name)
       for f in dataclasses.fields(P.GlobalNetworkPolicySpec)},
    **{(S.StagedKubernetesNetworkPolicySpec, f.name): support_of(K.K8sNetworkPolicySpec, f.name)
       for f in dataclasses.fields(K.K8sNetworkPolicySpec)},
    (S.StagedNetworkPolicySpec, "staged_action"): STAGED_ACTION,
    (S.StagedGlobalNetworkPolicySpec, "staged_action"): STAGED_ACTION,
    (S.StagedKubernetesNetworkPolicySpec, "staged_action"): STAGED_ACTION,
    **{(S.StagedGlobalNetworkPolicySpec, attr): unless((False,), Rejected(_NO_STAGE), "the normal stage")
       for attr in ("do_not_track", "pre_dnat", "apply_on_forward")},
}
