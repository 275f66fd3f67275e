"""Submissions: OpenRosa intake (durable before acknowledged), raw storage, processing."""
