"""PATE on the teachers' classifiers: votes on a query set (``voting``), noisy aggregation and its RDP cost
(``aggregate``), the student's data (``student_data``), the report (``report``) and the command (``command``)."""
