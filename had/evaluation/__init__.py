"""`had eval` internals: metrics, backbones, the fine-tuning protocol, resumable sweeps, reports.

Module map: metrics (which metric per task, scikit-learn scoring), backbones (had student or
HF encoder + mean-pool classifier), finetune (the protocol, documented there), probe (the
linear-probe protocol: frozen features + logistic regression), results (the results.parquet
store), sweep (tasks x lrs x seeds, resumable, optional Dask), paired (paired bootstrap
intervals over pretraining seeds), report
(lr chosen on validation, tables beside published numbers, plots).
"""
