"""Operator KPIs: availability, completeness, delivery, alert response and rule actions per day."""
