"""filterbench.harness.training"""
