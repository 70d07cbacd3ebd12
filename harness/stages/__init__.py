"""filterbench.harness.stages"""
