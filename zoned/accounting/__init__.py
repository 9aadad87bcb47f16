"""Who is charged for what: the three ownership models and the page-sharing report."""
