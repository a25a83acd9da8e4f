"""Retention: keep partitions ahead, drop expired days, purge old dead letters and audit rows.

``settings`` reads the policy, ``partitions`` is the SQL for partitions, ``purge`` runs one
maintenance round, ``loop`` runs rounds under an advisory lock, ``storage`` reports sizes and
``horizon`` says whether a missing row is past retention.
"""
