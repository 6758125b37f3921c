"""Evaluation: workload traces, their replay against baselines, metrics, reports and plots.

Modules are imported one by one (`from eval.replay import replay`): several pull in vLLM.
"""
