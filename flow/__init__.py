from flow.estimators import get_estimator as get_estimator
