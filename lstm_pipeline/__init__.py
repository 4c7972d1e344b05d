"""lstm-pipeline: a plain library for stock-price forecasting with an LSTM, tracked in MLflow.

Modules are imported where needed, so `import lstm_pipeline` stays cheap and never pulls torch.
"""

__version__ = "0.1.0"
