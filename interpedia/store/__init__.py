"""Every query and write, by resource; visibility rules; one builder per public document."""
