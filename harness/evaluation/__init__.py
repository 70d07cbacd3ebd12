"""filterbench.harness.evaluation"""
