"""``mtkd report``: the table, plots, prediction grid and ``report.html`` for a study or any folder of runs."""
