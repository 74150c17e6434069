"""Notebook-only code: what the notebooks use to teach, not what a model needs.

    exercises   automatic checks of the notebooks' exercises (exercises.check("04.2", answer))
    student     the student edition of the notebooks (make student; python -m pfgm_lite.teaching.student)
    plotting    matplotlib helpers of the figures
    widgets     ipywidgets explorers (notebooks 02 and 05)
Nothing in the rest of the package imports from here.
"""
