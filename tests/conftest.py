import os

# scikit-learn's array-API estimator check skips itself unless scipy's array
# API support is switched on before scipy is imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
