"""Statistics shared by the features, one copy each, built on scipy, statsmodels and scikit-learn.

- :mod:`~modelwarden.stats.multitest`: Holm and Benjamini-Hochberg adjusted p-values;
- :mod:`~modelwarden.stats.proportions`: Wilson and Newcombe intervals;
- :mod:`~modelwarden.stats.paired`: McNemar's test and Cohen's d_z;
- :mod:`~modelwarden.stats.bootstrap`: percentile bootstrap interval of a mean;
- :mod:`~modelwarden.stats.agreement`: Krippendorff's alpha, Cohen's kappa, reviewer consensus.

Import the submodule you need: each pulls in only its own libraries.
"""
