"""The interLink virtual kubelet (import name ``interlink_vk``)."""
