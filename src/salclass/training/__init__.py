"""salclass.training"""
