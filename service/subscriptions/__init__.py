"""Before the kit: the subscription request (DSC) and the employer's prerequisites."""
