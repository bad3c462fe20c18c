"""Names on Kubernetes objects that the virtual kubelet and its clients (Dask, Jupyter) agree on."""

from __future__ import annotations

VK_TAINT_KEY = "virtual-node.interlink/no-schedule"
"""The taint every virtual node carries (pods for it tolerate it)."""
VK_TYPE_LABEL = "virtual-node.interlink/type"
"""Node label whose value is :data:`VK_TYPE_VALUE` on every virtual node."""
VK_TYPE_VALUE = "virtual-kubelet"
VK_NODE_SELECTOR = f"{VK_TYPE_LABEL}={VK_TYPE_VALUE}"
"""Label selector of every virtual node."""
CONNECTIVITY_CONDITION = "InterLinkConnectivity"
"""Node condition type: whether the VK reaches its edge."""
JOB_ID_ANNOTATION = "interlink.eu/job-id"
"""Pod annotation: the remote job's id, written by the VK."""
HEARTBEAT_ANNOTATION = "interlink.eu/heartbeat-lease"
"""Pod annotation: the Lease whose expiry makes the VK delete the pod."""
HEARTBEAT_LABEL = "interlink.eu/heartbeat"
"""Lease label (``"true"``): the VK may delete the Lease itself once it expired."""
