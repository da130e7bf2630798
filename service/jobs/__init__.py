"""Staff's view of the background work: the queue page's and the jobs API's read model."""
